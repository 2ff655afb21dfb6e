from onoff_bridge.cli import main

main()
