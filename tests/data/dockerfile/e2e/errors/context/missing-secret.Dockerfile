FROM busybox
RUN --mount=type=secret,id=missing,required=true cat /run/secrets/missing
