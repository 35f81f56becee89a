"""How the outside reaches the posts service: gRPC servicers and the command line."""
