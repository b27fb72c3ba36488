from bearwatch.cli import main

main()
