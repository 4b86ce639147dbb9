FROM busybox
RUN --mount=type=nosuch,target=/x true
