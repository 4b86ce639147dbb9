FROM busybox
RUN echo fine
COPY ignored.txt /
