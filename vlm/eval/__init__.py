"""Evaluation of the VLM: box mAP, pointing game, anomaly AUROC, change accuracy, retrieval recall."""
