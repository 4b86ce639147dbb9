FROM busybox
RUN echo one
FROM dye2e-no-such-image-or-stage
RUN echo two
