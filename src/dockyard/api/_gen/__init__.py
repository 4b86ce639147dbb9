"""Generated protobuf modules (scripts/gen-proto); do not edit."""
