"""asymptote.launch"""
