# Runs at power-on and after every reset. Boot is safe: board.app builds the
# stepper drivers disabled first, and nothing moves until the operator homes.
# A failure at boot leaves the drivers disabled and the REPL open, with the
# traceback on the console for the engineer (mpremote connect PORT repl).
from board import app

app.main()
