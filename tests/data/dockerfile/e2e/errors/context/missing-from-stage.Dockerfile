FROM busybox AS build
RUN echo one
FROM busybox
COPY --from=buidl /x /x
