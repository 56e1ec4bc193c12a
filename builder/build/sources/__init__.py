"""Where ADD and RUN mounts read from besides the context: http(s) downloads, git repositories, SSH agents."""
