from avatar_bridge.cli import main

main()
