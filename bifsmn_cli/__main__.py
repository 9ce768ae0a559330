from bifsmn_cli.cli import main

main()
