"""glmdata: bilingual corpus construction for GLM pretraining, on Spark and Beam."""
