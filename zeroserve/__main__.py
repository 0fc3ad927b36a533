from zeroserve.app.cli import main

main()
