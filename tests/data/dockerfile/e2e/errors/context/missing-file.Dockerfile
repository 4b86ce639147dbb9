FROM busybox
RUN echo one > /one
COPY nosuch.txt /
