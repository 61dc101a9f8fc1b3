"""The one exception type of the analysis: bad inputs explained in words."""


class AnalysisError(ValueError):
    """Inputs the analysis cannot use (too few points, missing columns, an empty sweep...).

    The message is meant for the user as is; the command-line tools print it without a traceback.
    """
