FROM busybox
USER nosuchuser
RUN id
