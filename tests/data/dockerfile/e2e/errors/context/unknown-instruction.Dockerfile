FROM busybox
RUN echo fine
COPPY a.txt /
