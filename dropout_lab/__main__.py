from dropout_lab.cli import main

main()
