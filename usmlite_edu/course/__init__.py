"""The notebooks as a course: set-up cells, the notebook runner, checked exercises and
editions, the course plan, the book, the interactive explorer and the main job."""
