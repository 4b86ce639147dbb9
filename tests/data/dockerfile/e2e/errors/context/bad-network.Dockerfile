FROM busybox
RUN --network=bogus true
