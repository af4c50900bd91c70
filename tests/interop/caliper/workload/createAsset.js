'use strict';

const { WorkloadModuleBase } = require('@hyperledger/caliper-core');
const { assetId } = require('./assets');

/** CreateAsset(id, color, size, owner, appraisedValue) with a new id each time. */
class CreateAssetWorkload extends WorkloadModuleBase {
    constructor() {
        super();
        this.next = 0;
    }

    async submitTransaction() {
        const id = assetId(this.workerIndex, this.next++);
        return this.sutAdapter.sendRequests({
            contractId: this.roundArguments.contractId,
            contractFunction: 'CreateAsset',
            contractArguments: [id, 'blue', '5', `owner-${this.workerIndex}`, '300'],
            readOnly: false,
        });
    }
}

module.exports.createWorkloadModule = () => new CreateAssetWorkload();
