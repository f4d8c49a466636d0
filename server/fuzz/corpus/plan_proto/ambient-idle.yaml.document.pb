"¸# What the droid does when nothing else happens: quiet eyes, over and
# over. It runs on the ambient layer: a foreground plan pauses it, and it
# resumes where it was when that plan ends.
name: ambient-idle
layer: LAYER_AMBIENT
loop: true
steps:
  - id: rest
    eyePattern:
      pattern: idle
      brightness: 0.4
  - delay:
      duration: 20s
  - id: ponder
    eyePattern:
      pattern: thinking
      brightness: 0.3
  - delay:
      duration: 4s
  - id: look-around
    eyePattern:
      pattern: listening
      brightness: 0.4
  - delay:
      duration: 6s
