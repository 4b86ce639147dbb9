FROM busybox
COPY a.txt passwd /not-a-dir
