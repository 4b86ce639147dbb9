FROM busybox
COPY ../../etc/passwd /stolen
