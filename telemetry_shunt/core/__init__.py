"""Pure Python: no CDK, no boto3. Everything here is reused by the constructs, the CLI and the client."""
