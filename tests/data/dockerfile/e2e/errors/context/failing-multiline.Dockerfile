FROM busybox
WORKDIR /
RUN echo x \
  && exit 7
