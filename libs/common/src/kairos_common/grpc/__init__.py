"""gRPC plumbing shared by the services: the server skeleton, the error mapping, client channels."""
