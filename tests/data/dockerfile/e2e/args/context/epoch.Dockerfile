FROM busybox
# without a declaration it is no variable of RUN steps
RUN echo "undeclared=[$SOURCE_DATE_EPOCH]" > /undeclared.txt
ARG SOURCE_DATE_EPOCH
RUN echo "declared=[$SOURCE_DATE_EPOCH]" > /declared.txt
ENV SET_AFTER=1
WORKDIR /w
