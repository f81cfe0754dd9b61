"""The MLflow side: tracking every run and variant, the pyfunc model every logged variant loads as, and
registration and promotion of the champion."""
