FROM busybox
ONBUILD ARG GREETING=hello
ONBUILD RUN echo "$GREETING from a trigger" > /triggered.txt
ONBUILD COPY trigger-file.txt /from-trigger/
ONBUILD WORKDIR /onbuild-workdir
ONBUILD ENV TRIGGERED=yes
ONBUILD LABEL triggered=yes
RUN echo parent > /parent.txt
CMD ["parent-cmd"]
