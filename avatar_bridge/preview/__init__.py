"""The live preview: a local web page that shows the face on the bus and drives the daemon's controls."""
