FROM busybox
RUN echo fine
STOPSIGNAL NOPE
