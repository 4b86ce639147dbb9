FROM busybox
ARG VERSION
ENV V="${VERSION:?set it with --build-arg VERSION=...}"
