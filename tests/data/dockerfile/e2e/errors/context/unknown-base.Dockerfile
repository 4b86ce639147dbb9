ARG REGISTRY
FROM busybox
RUN echo one
FROM ${REGISTRY}/dye2e/no-such-image
RUN echo two
