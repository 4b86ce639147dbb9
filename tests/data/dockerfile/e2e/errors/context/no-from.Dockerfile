# an instruction before FROM
RUN echo hi
FROM busybox
