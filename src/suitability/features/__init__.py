"""Point-in-time features: questionnaire scoring, the feature kernel and the batch builder."""
