FROM busybox
RUN echo fine
RUN <<EOF
echo unterminated
