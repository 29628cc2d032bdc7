"""Storage servers on 127.0.0.1 for the remote tests: S3 (moto), GCS (the emulator), the Hub."""
