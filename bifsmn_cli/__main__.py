from bifsmn_cli.commands import main

main()
