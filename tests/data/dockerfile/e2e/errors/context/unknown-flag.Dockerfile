FROM busybox

COPY --chwon=1 a.txt /
