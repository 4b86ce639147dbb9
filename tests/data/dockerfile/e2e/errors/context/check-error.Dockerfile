# check=error=true
FROM busybox as base
RUN echo never
