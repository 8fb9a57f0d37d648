from medtorch.cli import main

main()
