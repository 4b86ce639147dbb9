# the triggers run once, in the stage FROM the image; a later stage FROM that stage
# does not run them again
FROM dye2e-onbuild-parent AS first
FROM first
RUN ls / > /root-listing.txt
