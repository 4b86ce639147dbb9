FROM busybox AS a
COPY --from=b /x /
FROM busybox AS b
COPY --from=a /x /
