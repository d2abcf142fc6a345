from ivideogpt.cli import main

main()
