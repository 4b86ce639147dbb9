FROM busybox
RUN echo one > /one
RUN echo failing && exit 3
RUN echo never
