"""longstm.evaluate"""
