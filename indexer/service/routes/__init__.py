"""One router per resource; ``common`` holds what they share (the served index, upload reading)."""
