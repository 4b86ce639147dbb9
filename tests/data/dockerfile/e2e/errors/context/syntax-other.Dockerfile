# syntax=example.com/frontends/other:1
FROM busybox
RUN echo never
