FROM busybox
EXPOSE 80/nope
