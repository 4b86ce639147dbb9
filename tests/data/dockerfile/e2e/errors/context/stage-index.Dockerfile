FROM busybox AS one
RUN echo one
FROM busybox
COPY --from=5 /x /
