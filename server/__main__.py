from server.cli import main

# Guarded: worker processes (server.scan_workers) import this module again.
if __name__ == "__main__":
    main()
