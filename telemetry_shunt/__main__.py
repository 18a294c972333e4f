from telemetry_shunt.cli import main

main()
