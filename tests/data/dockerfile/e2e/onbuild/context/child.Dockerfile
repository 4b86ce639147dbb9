FROM dye2e-onbuild-parent
RUN pwd > /child-pwd.txt
